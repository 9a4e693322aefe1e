from vault.cli import main

raise SystemExit(main())
