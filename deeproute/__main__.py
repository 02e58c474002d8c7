"""Allow `python -m deeproute`."""

from deeproute.cli import main

if __name__ == "__main__":
    main()
