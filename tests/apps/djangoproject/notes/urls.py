from django.urls import path

from . import views

app_name = "notes"
urlpatterns = [
    path("", views.NoteList.as_view(), name="list"),
    path("new/", views.NoteCreate.as_view(), name="new"),
    path("json/", views.notes_json, name="json"),
    path("where/", views.where, name="where"),
]
