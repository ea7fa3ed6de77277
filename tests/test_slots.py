import pytest

from stemcodec.slots import DEFAULT_VOCABULARY, SlotError, parse_slots


def test_preset_with_count_takes_first_instruments():
    assert parse_slots("vocals-free:4").names == ("drums", "bass", "guitar", "piano")
    assert parse_slots("full").names == DEFAULT_VOCABULARY
    assert parse_slots("solo-piano").names == ("piano",)


def test_explicit_list_keeps_order_and_maps_to_vocabulary_ids():
    spec = parse_slots("piano, drums,bass")
    assert spec.names == ("piano", "drums", "bass")
    assert spec.ids() == [5, 0, 1]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("kazoo", "unknown instrument or preset 'kazoo'"),
        ("drums,kazoo", "kazoo"),
        ("vocals-free:9", "has only 5 instruments"),
        ("vocals-free:0", "positive integer"),
        ("vocals-free:x", "positive integer"),
        ("nosuch:2", "unknown preset 'nosuch'"),
        ("drums,drums", "repeated"),
        ("", "empty"),
        ("drums,,bass", "empty name"),
    ],
)
def test_bad_slots_give_one_line_listing_choices(text, fragment):
    with pytest.raises(SlotError) as err:
        parse_slots(text)
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message


def test_unknown_name_lists_instruments_and_presets():
    with pytest.raises(SlotError, match="drums, bass, other, vocals, guitar, piano.*presets: full"):
        parse_slots("kazoo")


def test_instrument_outside_model_vocabulary_is_refused():
    with pytest.raises(SlotError, match="does not know instrument.*vocals.*valid instruments: piano"):
        parse_slots("full", vocabulary=("piano",))


def test_more_slots_than_model_allows_is_refused():
    with pytest.raises(SlotError, match="at most 2"):
        parse_slots("drums,bass,piano", max_slots=2)
