"""Driver contract suite: every scenario runs on every PbxDriver (see docs/contract-suite.md)."""
