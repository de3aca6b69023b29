"""The fake units themselves (crystalloop.hardware.testing): line faults, baud rate, JULABO's spacing.

What a port sees is read here with plain pyserial on the unit's pty; what the drivers make of
it is checked per family at the end (and per brand in test_pty_thermostats.py).
"""

import warnings

import pytest
import serial

from crystalloop.errors import DeviceTimeout, ProtocolError
from crystalloop.hardware.base import VirtualClock, connect
from crystalloop.hardware.testing import FAKE_FAMILIES, start_fake

#: a bath query per brand, as bytes on the line, and the family used for raw reads
QUERY = {"julabo/magio": b"in_pv_00\r", "huber/pilot_one": b"{M01****\r\n", "lauda/integral": b"IN_PV_00\r\n"}
TERMINATOR = b"\r\n"  # all three brands end replies in CR LF


@pytest.fixture(params=sorted(QUERY))
def raw(request):
    """A unit on a virtual clock and a plain pyserial port on its pty (9600 baud)."""
    unit, _ = start_fake(request.param, clock=VirtualClock(), temperature_c=25.0)
    port = serial.Serial(unit.url, 9600, timeout=0.3)
    yield unit, port, QUERY[request.param]
    port.close()
    unit.close()


def _ask(port, command):
    port.reset_input_buffer()
    port.write(command)
    return port.read_until(TERMINATOR)


def test_partial_reply_is_cut_before_its_terminator(raw):
    unit, port, query = raw
    clean = _ask(port, query)
    assert clean.endswith(TERMINATOR)
    unit.inject("partial")
    cut = _ask(port, query)  # read_until gives up after the timeout
    assert cut == clean[: (len(clean) - 2) // 2] and not cut.endswith(b"\n")
    assert unit.exchanges[-1][2] == cut.decode()


def test_wrong_reply_answers_another_command(raw):
    unit, port, query = raw
    clean = _ask(port, query)
    unit.inject("wrong")
    wrong = _ask(port, query)
    assert wrong.endswith(TERMINATOR) and wrong.isascii() and wrong != clean
    expected = {"julabo/magio": b"03 REMOTE START", "huber/pilot_one": b"{S0A0013", "lauda/integral": b"OK"}
    assert wrong[:-2] == expected[unit.brand.lower() + "/" + unit.family.lower()]
    assert _ask(port, query) == clean  # one command only


def test_wrong_reply_to_a_write_or_the_status(raw):
    unit, port, _ = raw
    command = {"JULABO": b"status\r", "Huber": b"{M0A****\r\n", "LAUDA": b"OUT_SP_00_30.00\r\n"}[unit.brand]
    unit.inject("wrong")
    reply = _ask(port, command)[:-2].decode()
    if unit.brand == "Huber":
        assert reply.startswith("{S01")  # the bath register, where the status word was asked
    else:
        assert float(reply) == pytest.approx(25.0, abs=0.01)  # a temperature where a status / OK was due
    if unit.brand == "LAUDA":
        assert unit.bath.setpoint_c == 30.0  # the unit acted on the write all the same


def test_xonxoff_bytes_inside_the_reply(raw):
    unit, port, query = raw
    clean = _ask(port, query)
    unit.inject("xonxoff", times=2)
    for _ in range(2):
        dirty = _ask(port, query)
        assert dirty.startswith(b"\x13" + clean[:1] + b"\x11")
        assert dirty.replace(b"\x13", b"").replace(b"\x11", b"") == clean
    assert _ask(port, query) == clean


def test_faults_apply_only_to_the_commands_named(raw):
    unit, port, query = raw
    clean = _ask(port, query)
    other = {"JULABO": b"in_sp_00\r", "Huber": b"{M00****\r\n", "LAUDA": b"IN_SP_00\r\n"}[unit.brand]
    unit.inject("garble", when=query.decode().strip())
    assert _ask(port, other).isascii()
    assert not _ask(port, query).isascii()
    assert _ask(port, query) == clean


def test_unknown_fault_and_link_are_refused():
    unit, _ = start_fake("lauda/eco", clock=VirtualClock())
    with unit, pytest.raises(ValueError, match=r"fault 'noise' unknown; expected one of \('silent', 'garble', "
                                               r"'partial', 'wrong', 'xonxoff', 'disconnect'\)"):
        unit.inject("noise")
    with pytest.raises(ValueError, match="link must be 'pty' or 'socket', got 'tcp'"):
        start_fake("lauda/eco", link="tcp")


@pytest.mark.parametrize("family", sorted(QUERY))
def test_wrong_baud_rate_gives_noise_and_the_unit_acts_on_nothing(family):
    write = {"julabo/magio": b"out_sp_00 30.0\r", "huber/pilot_one": b"{M000BB8\r\n",
             "lauda/integral": b"OUT_SP_00_30.00\r\n"}[family]
    unit, _ = start_fake(family, clock=VirtualClock(), baudrate=4800)
    with unit:
        with serial.Serial(unit.url, 9600, timeout=0.3) as port:
            for command in (QUERY[family], write):
                reply = _ask(port, command)
                assert reply.endswith(b"\n") and len(reply) > 1
                assert all(b >= 0x80 for b in reply[:-1]), reply
            assert unit.bath.setpoint_c == 20.0
            port.baudrate = 4800  # the driver's port now at the unit's speed
            assert _ask(port, QUERY[family]).rstrip(TERMINATOR).isascii()
            _ask(port, write)
            assert unit.bath.setpoint_c == 30.0


def test_baud_rate_none_accepts_any_speed_and_a_socket_has_none():
    unit, _ = start_fake("huber/cc", clock=VirtualClock(), baudrate=None)
    with unit, serial.Serial(unit.url, 19200, timeout=0.3) as port:
        assert _ask(port, b"{M01****\r\n") == b"{S0107D0\r\n"
    unit, _ = start_fake("huber/cc", clock=VirtualClock(), baudrate=4800, link="socket")
    with unit, serial.serial_for_url(f"socket://{unit.url}", timeout=0.3) as port:
        assert _ask(port, b"{M01****\r\n") == b"{S0107D0\r\n"


@pytest.mark.parametrize("enforce", [False, True])
def test_julabo_counts_and_drops_commands_closer_than_250_ms(enforce):
    clock = VirtualClock()
    unit, _ = start_fake("julabo/corio", clock=clock, enforce_interval=enforce, jitter_s=0.05)
    with unit, serial.Serial(unit.url, 9600, timeout=0.3) as port:
        assert _ask(port, b"in_pv_00\r") == b"20.00\r\n"
        clock.sleep(0.21)  # within the jitter allowance
        assert _ask(port, b"in_sp_00\r") == b"20.00\r\n"
        clock.sleep(0.1)
        fast = _ask(port, b"out_sp_00 30.0\r") + _ask(port, b"in_sp_00\r")
        assert unit.too_fast == 2
        if enforce:  # both came too fast: dropped, not acted on
            assert fast == b"" and unit.bath.setpoint_c == 20.0
            assert [m.split(":")[0] for _, m in unit.events] == ["dropped 'out_sp_00 30.0'", "dropped 'in_sp_00'"]
        else:
            assert fast == b"30.00\r\n" and unit.events == []
        clock.sleep(0.25)
        _ask(port, b"out_sp_00 31.0\r")
        assert unit.wait_for(lambda: unit.bath.setpoint_c == 31.0)


def test_huber_device_ramp_echoes_its_target_and_ends_there():
    clock = VirtualClock()
    unit, _ = start_fake("huber/pilot_one", clock=clock)
    with unit, serial.Serial(unit.url, 9600, timeout=0.3) as port:
        assert _ask(port, b"{M590258\r\n") == b"{S590258\r\n"  # 600 s
        assert _ask(port, b"{M5A0FA0\r\n") == b"{S5A0FA0\r\n"  # to 40.00 °C: the write is echoed
        clock.sleep(300.0)
        assert _ask(port, b"{M00****\r\n") == b"{S000BB8\r\n"  # 30.00 °C half way
        assert _ask(port, b"{M5A****\r\n") == b"{S5A0FA0\r\n"
        clock.sleep(301.0)
        assert _ask(port, b"{M00****\r\n") == b"{S000FA0\r\n"
        assert unit.bath.ramp_target_c is None


@pytest.mark.parametrize("family", sorted(FAKE_FAMILIES))
def test_every_family_line_fault_reaches_the_driver_as_an_error(family):
    """partial → DeviceTimeout, wrong → ProtocolError, xonxoff → a clean reading; then all is well."""
    clock = VirtualClock()
    unit, url = start_fake(family, clock=clock, temperature_c=25.0)
    with unit, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # missing functions: test_families.py
        with connect(f"{url}?timeout_s=0.2", clock=clock) as cz:
            dev = cz.thermostat
            unit.inject("partial")
            with pytest.raises(DeviceTimeout, match="a partial reply"):
                dev.read_bath()
            unit.inject("wrong")
            with pytest.raises(ProtocolError):
                dev.read_bath()
            unit.inject("xonxoff")
            assert dev.read_bath().value == pytest.approx(unit.bath.bath_c, abs=0.011)
            assert dev.read_bath().value == pytest.approx(unit.bath.bath_c, abs=0.011)
