"""Test step: prints a line, then exits with the code given as argument."""
import sys

print("about to exit")
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
