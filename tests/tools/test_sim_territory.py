"""The territory and its seeded fleet generator."""
import pytest

from eclor.tools import territory


def test_fleet_is_deterministic_unique_and_placed_in_the_communes():
    a = territory.fleet(1000, 500, seed=1)
    assert a == territory.fleet(1000, 500, seed=1)
    assert a != territory.fleet(1000, 500, seed=2)
    assert len(a) == 1500 and len({d["ep"] for d in a}) == 1500
    assert sum(d["role"] == "lamp" for d in a) == 1000
    names = {c[0]: c for c in territory.COMMUNES}
    assert {d["commune"] for d in a} == set(names)          # every commune has devices
    for d in a:
        _, lat, lon, _ = names[d["commune"]]
        # within ~2 km of its commune's centre, and around 49.47 N 5.93 E
        assert abs(d["lat"] - lat) < 0.02 and abs(d["lon"] - lon) < 0.03
        assert 49.3 < d["lat"] < 49.6 and 5.8 < d["lon"] < 6.1
        assert d["ep"].startswith(d["role"] + "-" + territory.slug(d["commune"]) + "-")
        assert d["ep"].isascii() and len(d["ep"]) <= 63
        if d["role"] == "lamp":
            assert d["lamp"]["wattage"] in (30, 40, 50, 70, 100, 150)
        else:
            assert 0.5 < d["bin"]["depth_m"] < 2 and d["bin"]["volume_l"] >= 340
    # shares follow population: Villerupt has the most, Bréhain-la-Ville the fewest
    s = territory.summary(a)
    assert s["Villerupt"]["lamp"] == max(v["lamp"] for v in s.values())
    assert s["Bréhain-la-Ville"]["lamp"] == min(v["lamp"] for v in s.values())


def test_small_fleets_and_bad_counts():
    assert [d["commune"] for d in territory.fleet(3, 0)] == ["Villerupt", "Audun-le-Tiche", "Hussigny-Godbrange"]
    assert territory.fleet(0, 0) == []
    with pytest.raises(ValueError):
        territory.fleet(-1, 2)
    assert territory.slug("Bréhain-la-Ville") == "brehain-la-ville"
    assert territory.commune("redange")[0] == "Rédange"
    with pytest.raises(KeyError, match="known:"):
        territory.commune("Luxembourg")
