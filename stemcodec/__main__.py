from stemcodec.cli import main

raise SystemExit(main())
