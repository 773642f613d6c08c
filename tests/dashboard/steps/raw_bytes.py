"""Test step: writes awkward bytes: invalid UTF-8, ANSI colours, \\r redraws, no final newline."""
import sys

out = sys.stdout.buffer
out.write(b"caf\xe9 \xff\xfe broken utf-8\n")
out.write("utf-8 ok: caf\u00e9 \u2713\n".encode())
out.write(b"\x1b[31mWARNING: red text\x1b[0m\n")
out.write(b"\x1b]0;window title\x07title set\n")
out.write(b"bar 10%\rbar 50%\rbar 100%\r\n")
out.write(b"SUMMARY: 1/1 succeeded, 0 failed, 0 skipped")
out.flush()
