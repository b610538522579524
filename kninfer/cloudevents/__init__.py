"""cloudevents"""
