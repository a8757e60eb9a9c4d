"""The web faces: the admin dashboard (/admin) and the user portal (/portal), thin callers of
`solaris.operations`: pages, sessions and their cookies, CSRF, languages, the sign-in forms."""
