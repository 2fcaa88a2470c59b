from selfmae.cli import main

raise SystemExit(main())
