from django.http import JsonResponse
from django.urls import reverse, reverse_lazy
from django.views.generic import CreateView, ListView

from .forms import NoteForm
from .models import Note


class NoteCreate(CreateView):
    form_class = NoteForm
    template_name = "notes/note_form.html"
    success_url = reverse_lazy("notes:list")


class NoteList(ListView):
    model = Note
    template_name = "notes/note_list.html"


def notes_json(request):
    return JsonResponse({"notes": list(Note.objects.values("id", "title", "body"))})


def where(request):
    """What Django made of the environ: the URL it would hand back to the client."""
    return JsonResponse({
        "script_name": request.META.get("SCRIPT_NAME"),
        "path_info": request.path_info,
        "path": request.path,
        "host": request.get_host(),
        "absolute_uri": request.build_absolute_uri(),
        "reversed_list": reverse("notes:list"),
    })
