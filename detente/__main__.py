from detente.cli import app

app()
