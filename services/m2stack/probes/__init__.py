"""What the containers run beside a door to tell their orchestrator how it is doing."""
