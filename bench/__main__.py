from .cni_latency import main

raise SystemExit(main())
