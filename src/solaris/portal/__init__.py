"""The user portal: signed links now; pages come with the portal issue."""
