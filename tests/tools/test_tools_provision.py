"""eclor provision against a real `eclor gateway` subprocess: files, owner-only
secrets, a config the firmware's own validator accepts, the device declared
in the inventory; bad input and an unreachable gateway get one clear line."""
import json
import os
import stat
import subprocess
import sys

import pytest

from eclor.tools import cli
from eclor.tools.fleet import gwproc
from mpbridge import MicroBridge


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    gw = gwproc.Gateway(tmp_path_factory.mktemp("gw")).start()
    yield gw
    gw.stop()


def _argv(out, ep="lamp-audun-0042", *extra):
    return ["provision", ep, "--role", "lamp", "--zone", "centre", "--commune", "Audun-le-Tiche",
            "--lat", "49.4726", "--lon", "5.9513", "--out", str(out)] + list(extra)


def test_provision_writes_config_secrets_and_declares(tmp_path, gateway, capsys):
    psk = tmp_path / "psk.txt"
    psk.write_text("s3cret-wifi-key\n")
    rc = cli.main(_argv(tmp_path / "devices", "lamp-audun-0042", "--gateway", "coap://%s:%d" % gateway.coap,
                        "--wifi", "CCPHVA-IOT", "--wifi-psk-file", str(psk), "--api", gateway.http_url,
                        "--board", "esp32_devkitc"))
    out = capsys.readouterr().out
    assert rc == 0, out
    d = tmp_path / "devices" / "lamp-audun-0042"
    cfg = json.loads((d / "config.json").read_text())
    assert cfg == {"ep": "lamp-audun-0042", "role": "lamp", "gateway": {"host": "127.0.0.1", "port": gateway.coap_port},
                   "zone": "centre", "commune": "Audun-le-Tiche", "lat": 49.4726, "lon": 5.9513,
                   "board": "esp32_devkitc"}
    sec = json.loads((d / "secrets.json").read_text())
    assert sec == {"ssid": "CCPHVA-IOT", "psk": "s3cret-wifi-key"}
    assert stat.S_IMODE(os.stat(d / "secrets.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert "s3cret" not in out
    dev = gateway.api.get("/api/devices/lamp-audun-0042")
    assert (dev["type"], dev["zone"], dev["commune"], dev["lat"], dev["lon"]) == \
        ("lamp", "centre", "Audun-le-Tiche", 49.4726, 5.9513)
    # the firmware's own validator (dev.config, in MicroPython) accepts it
    with MicroBridge() as mp:
        checked = mp.call("dev.config.validate", cfg)
    assert checked is None or checked.get("ep") == "lamp-audun-0042"


def test_psk_is_never_an_argument(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(_argv(tmp_path, "lamp-x-1", "--wifi", "NET", "--wifi-psk", "hunter22"))
    err = capsys.readouterr().err
    assert "unrecognized arguments: --wifi-psk" in err   # not taken for --wifi-psk-file
    rc = cli.main(_argv(tmp_path, "lamp-x-1", "--wifi", "NET", "--wifi-psk-file", "hunter22", "--no-declare"))
    err = capsys.readouterr().err
    assert rc == 2 and "cannot read that file" in err and "hunter22" not in err
    # without a file and without a terminal there is no way to give the key
    r = subprocess.run([sys.executable, "-m", "eclor.tools.cli"] + _argv(tmp_path, "lamp-x-1", "--wifi", "NET", "--no-declare"),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip() == "eclor provision: --wifi: the key must come from --wifi-psk-file FILE or a terminal prompt"
    assert not (tmp_path / "lamp-x-1" / "secrets.json").exists()


@pytest.mark.parametrize("extra,words", [
    (["--lat", "95"], "--lat: 95.0 is not a latitude"),
    (["--gateway", "http://gw:5683"], "--gateway: 'http://gw:5683' must be coap://"),
    (["--gateway", "coap://gw:99999"], "--gateway: bad port"),
    (["--report-s", "2"], "--report-s: 2 is outside 10..86400"),
])
def test_bad_input_is_one_line(tmp_path, capsys, extra, words):
    rc = cli.main(_argv(tmp_path, "lamp-x-1", "--no-declare", *extra))
    err = capsys.readouterr().err
    assert rc == 2 and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "lamp-x-1" / "config.json").exists()


def test_bad_ep_is_one_line(tmp_path, capsys):
    rc = cli.main(_argv(tmp_path, "lamp x/1", "--no-declare"))
    err = capsys.readouterr().err
    assert rc == 2 and "EP: 'lamp x/1' must be letters" in err and err.count("\n") == 1


def test_unreachable_gateway_keeps_the_files(tmp_path, capsys):
    port = gwproc.free_port()
    rc = cli.main(_argv(tmp_path, "lamp-x-2", "--api", "http://127.0.0.1:%d" % port))
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1
    assert "not declared at the gateway: cannot reach the gateway" in err
    cfg = json.loads((tmp_path / "lamp-x-2" / "config.json").read_text())
    assert cfg["gateway"] == {"host": "127.0.0.1", "port": 5683}   # from the --api host
