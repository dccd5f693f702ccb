from models.evaluate.cli import main

raise SystemExit(main())
