"""The simulated OpenAI organization: its spend (`org`), and the Admin API that serves it (`api`).

Used by the test suite, `demo` and `fake-api`; it ships in the package so the container can run the demo.
"""
