"""The way most scripts send a newsletter, kept as the benchmark's point of comparison (never used by mailroom).

For every row of the CSV: fill in that person's copy of the whole HTML, then one API request with the
``sendgrid`` library's quick-start pattern, Mail(from, to, subject, html) + SendGridAPIClient(key).send.
It starts from the same composed build as mailroom (the charitable case: a script that also ran the full
MJML render per person would be far slower still).

Run by bench_send_compare.py: python bench/naive_send.py BUILD_HTML AUDIENCES.CSV HOST SUBJECT FROM
(the API key comes from SENDGRID_API_KEY). Prints one JSON line: sent and requests.
"""

from __future__ import annotations

import csv
import json
import os
import sys

from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail


def main() -> None:
    html_path, csv_path, host, subject, sender = sys.argv[1:6]
    template = open(html_path, encoding="utf-8").read()  # noqa: SIM115 - a short script, as most are
    client = SendGridAPIClient(os.environ["SENDGRID_API_KEY"], host=host)
    sent = requests = 0
    with open(csv_path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            html = (template.replace("%%greeting%%", f"Dear {row['first_name']}")
                    .replace("%%first_name%%", row["first_name"]).replace("%%last_name%%", row["last_name"])
                    .replace("%%unsubscribe_url%%", f"https://example.org/unsubscribe?e={row['email']}")
                    .replace("%%recipient_id%%", row["email"]))
            message = Mail(from_email=sender, to_emails=row["email"], subject=subject, html_content=html)
            response = client.send(message)
            requests += 1
            sent += 200 <= response.status_code < 300
    print(json.dumps({"sent": sent, "requests": requests}))


if __name__ == "__main__":
    main()
