"""The REST face: the admin API under /api/admin (OpenAPI at /api/docs), a thin caller of
`solaris.operations`.

    api.py     the FastAPI app: errors in OpenAI's shape, the sign-in route
    auth.py    who calls the API: an admin JWT or an admin API key; sign-in rate limits
    inputs.py  the API's request bodies and parameter types, all bounded
    routes.py  the API's resources, each one call into `Operations`
"""
