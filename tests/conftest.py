import numpy as np
import pytest
import soundfile as sf


def tone(seconds: float, rate: int = 24000, freq: float = 220.0, channels: int = 1,
         amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a little noise, `[S, C]` float32, as soundfile wants it."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = amp * (np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t))
    x = x + 0.01 * rng.standard_normal(len(t))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


@pytest.fixture
def write_tone():
    def write(path, seconds=1.0, rate=24000, channels=1, subtype=None, **kw):
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(seconds, rate, channels=channels, **kw), rate, subtype=subtype)
        return path
    return write


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """The thread-count choices generation remembers (stemcodec/generation/threads.py) go to
    a folder of the test session, not the user's ~/.cache."""
    import os
    before = os.environ.get("STEMCODEC_CACHE")
    os.environ["STEMCODEC_CACHE"] = str(tmp_path_factory.mktemp("stemcodec-cache"))
    yield
    if before is None:
        os.environ.pop("STEMCODEC_CACHE", None)
    else:
        os.environ["STEMCODEC_CACHE"] = before
