"""ChargeScape as an OpenADR 3 VEN of a utility's VTN (openadr3-client): poll programs and
events, turn them into grid events and tariff prices, report usage back. See docs/utility-api.md."""
