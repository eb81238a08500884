"""The shared core of the mycni plugins: spec types, dispatcher, errors, delegation."""
