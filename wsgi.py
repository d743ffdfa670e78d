from spiralogic import create_app

app = create_app()
