"""Owner forms of the Programs tab: enroll under the terms shown, opt out of an event."""

from django import forms

from vehicles.models import Vehicle


class EnrollForm(forms.Form):
    vehicle = forms.ModelChoiceField(
        queryset=Vehicle.objects.none(), empty_label=None, label="Which car"
    )
    terms_version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)
    accept = forms.BooleanField(
        label="I have read and accept the program terms",
        error_messages={"required": "Please accept the terms to join."},
    )
    source = forms.CharField(widget=forms.HiddenInput, required=False, max_length=60)

    def __init__(self, *args, vehicles, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["vehicle"].queryset = vehicles


class OptOutForm(forms.Form):
    class Choice:
        FULL = "full"
        PARTIAL = "partial"

    choice = forms.ChoiceField(
        choices=[
            (Choice.FULL, "Skip this event: charge as usual"),
            (Choice.PARTIAL, "Take part, but keep charging to at least…"),
        ],
        widget=forms.RadioSelect,
        initial=Choice.FULL,
    )
    keep_soc_pct = forms.IntegerField(
        min_value=5, max_value=100, required=False, label="Keep charging to (%)", initial=40
    )

    def clean(self):
        data = super().clean()
        if data.get("choice") == self.Choice.PARTIAL and data.get("keep_soc_pct") is None:
            self.add_error("keep_soc_pct", "Choose the charge level to keep.")
        return data
