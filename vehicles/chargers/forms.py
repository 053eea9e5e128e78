"""Owner forms: claiming a charger with the id and pairing code on its label."""

from django import forms

from vehicles.chargers.models import CHARGE_POINT_ID_RE
from vehicles.models import Vehicle


class ClaimChargerForm(forms.Form):
    charge_point_id = forms.RegexField(
        label="Charger id",
        regex=CHARGE_POINT_ID_RE,
        max_length=48,
        help_text="Printed on the label, e.g. CS-000123.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters"}),
    )
    pairing_code = forms.CharField(
        label="Pairing code",
        max_length=20,
        help_text="The 10 characters under the id, e.g. 7K3QD-9XH2M.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters"}),
    )

    def clean_charge_point_id(self) -> str:
        return self.cleaned_data["charge_point_id"].strip()


class PairVehicleForm(forms.Form):
    vehicle = forms.ModelChoiceField(
        label="The car that usually plugs in here",
        queryset=Vehicle.objects.none(),
        required=False,
        empty_label="No car in particular",
    )

    def __init__(self, *args, owner, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.fields["vehicle"].queryset = Vehicle.objects.filter(owner=owner).exclude(
            link_state=Vehicle.LinkState.UNLINKED
        )
