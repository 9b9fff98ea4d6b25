"""``python -m sdprobe.toy.train``: the toy model's training, stage by stage (``make toy``)."""

from sdprobe.toy.train.cli import main

raise SystemExit(main())
