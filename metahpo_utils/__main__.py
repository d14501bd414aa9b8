from metahpo_utils.cli import main

raise SystemExit(main())
