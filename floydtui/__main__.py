from floydtui.cli import main

raise SystemExit(main())
