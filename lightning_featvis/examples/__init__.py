"""Small examples of extending lightning_featvis; each is exercised by the tests."""
