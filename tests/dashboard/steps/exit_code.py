"""Test step: prints a line (and the further arguments, one per line), then
exits with the code given as its first argument."""
import sys

print("about to exit")
for line in sys.argv[2:]:
    print(line)
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
