from django import forms

from accounts.models import User


class ProfileForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["time_zone", "service_zip"]
        widgets = {
            "service_zip": forms.TextInput(
                attrs={
                    "inputmode": "numeric",
                    "autocomplete": "postal-code",
                    "placeholder": "94107",
                }
            ),
        }
