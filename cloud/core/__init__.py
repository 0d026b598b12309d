"""Settings, database plumbing and security helpers of the cloud service."""
