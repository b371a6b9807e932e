from openchamber.cli import main

raise SystemExit(main())
