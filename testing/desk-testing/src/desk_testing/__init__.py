"""What the cross-service tests in tests/ share: the desk as four processes wired to each other
(``stack``), each service's production settings (``production``) and the fault suite's harness
(``faults``). A workspace member that only the dev group installs, never part of an image."""
