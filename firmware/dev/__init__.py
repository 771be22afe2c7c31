"""Services shared by the lamp and bin roles: store, config, clock, outbox, commands, log."""
