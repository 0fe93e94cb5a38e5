"""Entry point for the two-process test: `accelerate launch -m tests.ddp_entry "<python code>"`."""
import sys

if __name__ == "__main__":
    exec(sys.argv[1])
