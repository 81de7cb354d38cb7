"""Test support: local fakes of the messengers' APIs and the server they run on."""
