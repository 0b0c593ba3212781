"""Command line of recbole_transfer, in the style of RecBole's run_recbole.py.

    python run_recbole_transfer.py                      # default scenario on the bundled ml-100k
    python run_recbole_transfer.py --model=TransferMLP --source=drama --target=action \
        --config_files="my.yaml" --transfer=config-5 --transfer_mode=freeze
    python run_recbole_transfer.py --scenario --targets="[action,dark]"   # all arms, gain table
    python run_recbole_transfer.py --importance=saved/<checkpoint>.pth     # layer importance (Fig. 2)
    python run_recbole_transfer.py --tune --target=action                  # Ray Tune picks the transfer per target
    python run_recbole_transfer.py --resume=saved/tune/<run>               # continue an interrupted search

Any other ``--key=value`` is a RecBole or recbole_transfer config key. Bad input exits with code 2
and one message on stderr.
"""

import sys

from recbole_transfer.cli import main

if __name__ == "__main__":
    sys.exit(main())
