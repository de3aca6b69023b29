"""Transport: line settings, URL options, terminators, XON/XOFF, delays, timeouts, disconnects."""

import pytest
import serial

from crystalloop.errors import BackendError, ConfigError, DeviceDisconnected, DeviceTimeout
from crystalloop.hardware.base import VirtualClock
from crystalloop.hardware.testing import ProtocolMismatch, ScriptedPort, expected_protocol
from crystalloop.hardware.transport import LineSettings, Transport, port_url


def test_line_settings_describe_and_serial_kwargs():
    s = LineSettings(baudrate=4800, bytesize=7, parity="E", rtscts=True)
    assert s.describe() == "4800 baud 7E1, RTS/CTS"
    kw = s.serial_kwargs()
    assert (kw["baudrate"], kw["bytesize"], kw["parity"], kw["rtscts"]) == (4800, 7, serial.PARITY_EVEN, True)


def test_options_from_url_strings():
    s = LineSettings().with_options(
        {"baudrate": "4800", "parity": "e", "bytesize": "7", "xonxoff": "1", "timeout_s": "0.5",
         "write_terminator": "CRLF", "read_terminator": "\\r", "min_interval_s": "0.25"}
    )
    assert (s.baudrate, s.parity, s.bytesize, s.xonxoff, s.timeout_s) == (4800, "E", 7, True, 0.5)
    assert (s.write_terminator, s.read_terminator, s.min_interval_s) == (b"\r\n", b"\r", 0.25)
    assert LineSettings().with_options({"framing": "7E2"}).framing == "7E2"


@pytest.mark.parametrize(
    "options, match",
    [
        ({"baudrate": "9601"}, r"baudrate=9601 is not a standard serial rate"),
        ({"baudrate": "fast"}, r"baudrate='fast' for JULABO is not a number"),
        ({"parity": "X"}, r"parity='X' is invalid; expected one of N, E, O, M, S"),
        ({"bytesize": "9"}, r"bytesize=9 is invalid"),
        ({"stopbits": "3"}, r"stopbits=3 is invalid"),
        ({"framing": "8X1"}, r"framing='8X1' for JULABO is invalid"),
        ({"rtscts": "maybe"}, r"rtscts='maybe' for JULABO is invalid; expected true/false"),
        ({"timeout_s": "0"}, r"timeout_s=0.0 s is invalid"),
        ({"min_interval_s": "-1"}, r"min_interval_s=-1.0 s is invalid"),
    ],
)
def test_bad_line_options(options, match):
    with pytest.raises(ConfigError, match=match):
        LineSettings().with_options(options, device="JULABO")


def test_port_url():
    assert port_url("/dev/ttyUSB0") == "/dev/ttyUSB0"
    assert port_url("COM3") == "COM3"
    assert port_url("192.168.0.5:8101") == "socket://192.168.0.5:8101"
    assert port_url("loop://") == "loop://"
    with pytest.raises(BackendError, match="No port given"):
        port_url("")


def test_open_missing_port_lists_ports():
    with pytest.raises(BackendError, match=r"Port '/dev/ttyNOPE9' for JULABO does not exist; serial ports present"):
        Transport.open("/dev/ttyNOPE9", device="JULABO")


def test_open_unknown_pyserial_scheme():
    with pytest.raises(BackendError, match=r"Cannot open port 'foo://x' for LAUDA"):
        Transport.open("foo://x", device="LAUDA")


def test_loop_url_round_trip():
    with Transport.open("loop://", settings=LineSettings(timeout_s=0.05), device="loop") as t:
        # loop:// echoes "hello\r", which lacks the LF terminator: a partial reply
        with pytest.raises(DeviceTimeout, match=r"a partial reply b'hello\\r'"):
            t.query("hello")
    t = Transport.open("loop://", settings=LineSettings(write_terminator=b"\n", timeout_s=0.05), device="loop")
    assert t.query("25.00") == b"25.00"
    t.close()
    with pytest.raises(DeviceDisconnected, match="loop on loop://: the port is closed"):
        t.query("x")


def test_terminator_whitespace_and_xonxoff_stripping():
    settings = LineSettings(read_terminator=b"\n")
    with expected_protocol([(b"a\r", b"\x13 25.\x1100\r\n")], settings=settings) as t:
        assert t.query("a") == b"25.00"
    keep = LineSettings(strip_xonxoff=False)
    with expected_protocol([(b"a\r", b"\x1325\r\n")], settings=keep) as t:
        assert t.query("a") == b"\x1325"


def test_timeout_names_device_port_command():
    with expected_protocol([(b"in_pv_00\r", b"")], settings=LineSettings(timeout_s=0.3), device="JULABO") as t:
        with pytest.raises(DeviceTimeout, match=r"JULABO on scripted://: no reply to b'in_pv_00\\r' within 0.3 s"):
            t.query("in_pv_00")


def test_partial_reply_is_timeout_with_bytes_shown():
    with expected_protocol([(b"x\r", b"12.")], device="LAUDA") as t:
        with pytest.raises(DeviceTimeout, match=r"a partial reply b'12.'"):
            t.query("x")


def test_min_interval_waits_on_clock_only_when_needed():
    clock = VirtualClock()
    settings = LineSettings(min_interval_s=0.25)
    with expected_protocol([(b"a\r", None), (b"b\r", None), (b"c\r", None)], settings=settings, clock=clock) as t:
        t.write("a")
        assert clock.now() == 0.0
        t.write("b")
        assert clock.now() == pytest.approx(0.25)
        clock.sleep(1.0)
        t.write("c")
        assert clock.now() == pytest.approx(1.25)


def test_disconnect_during_exchange():
    port = ScriptedPort([(b"a\r", b"1\n")])
    t = Transport(port, device="Huber", url="/dev/pts/9", clock=VirtualClock())
    port.close()
    with pytest.raises(DeviceDisconnected, match=r"Huber on /dev/pts/9 disconnected while sending b'a\\r'"):
        t.query("a")
    assert not t.is_open


def test_scripted_port_rejects_unread_reply_and_bad_script():
    with pytest.raises(ProtocolMismatch, match="never read before the next command"):
        with expected_protocol([(b"a\r", b"1\n"), (b"b\r", b"2\n")]) as t:
            t.write("a")
            t.write("b")
    with pytest.raises(TypeError, match="exchange 0 must be"):
        ScriptedPort([("a", "b")])
    with pytest.raises(ProtocolMismatch, match="script exhausted|all 0 scripted"):
        with expected_protocol([]) as t:
            t.write("x")


def test_reopen_after_close():
    t = Transport.open("loop://", settings=LineSettings(write_terminator=b"\n", timeout_s=0.05), device="loop")
    t.close()
    t.reopen()
    assert t.is_open and t.query("1.5") == b"1.5"
    t.close()


def test_open_refused_tcp_port_is_disconnected_with_hint():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(DeviceDisconnected, match=r"Cannot open port 'socket://127.0.0.1:\d+' for Huber: .*refused.*check host, port"):
        Transport.open(f"127.0.0.1:{port}", device="Huber")
