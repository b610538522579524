"""Running `kninfer serve`: resolve, load and warm the model, then serve (`startup`); the server's
start and SIGTERM drain (`lifecycle`, `draining`); `--workers N` processes (`workers`)."""
