"""Services behind the routes: ATT&CK mapping, explanations, the alert writer, exports."""
