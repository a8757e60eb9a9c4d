"""The web side: the admin dashboard and the user portal (pages, sessions, CSRF, languages),
and the signed links that sign a user in to the portal."""
