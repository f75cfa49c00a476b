"""``python -m npformer`` runs the same CLI as the ``npformer`` console script."""
import sys

from npformer.cli import main

sys.exit(main())
