"""Carrier webhook URLs. Voice, fallback and status URLs are configured on numbers: keep them stable."""

from django.urls import path

from callbroker.carriers import views

app_name = "carriers"

urlpatterns = [
    path("twilio/voice", views.voice, name="twilio-voice"),
    path("twilio/fallback", views.fallback, name="twilio-fallback"),
    path("twilio/status", views.status, name="twilio-status"),
    path("twilio/ivr/zip", views.ivr_zip, name="twilio-ivr-zip"),
    path("twilio/ivr/category", views.ivr_category, name="twilio-ivr-category"),
    path("twilio/dial", views.dial_action, name="twilio-dial"),
    path("twilio/whisper", views.whisper, name="twilio-whisper"),
    path("twilio/recording", views.recording, name="twilio-recording"),
    path("twilio/voicemail", views.voicemail, name="twilio-voicemail"),
]
