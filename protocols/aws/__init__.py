"""The AWS-compatible HTTP APIs (SQS now; SNS, EventBridge and Step Functions later), served on
one endpoint (port 4566). ``http.py`` is the server and the router, ``wire_json.py`` and
``wire_query.py`` the two wire protocols, ``sigv4.py`` the signature check, ``model.py`` the
botocore service models every codec is driven by, and ``errors.py`` the error a service raises."""
