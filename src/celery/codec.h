// Small encodings the wire formats need: base64 (kombu bodies), random ids (task ids and
// delivery tags are UUID4 strings), ISO-8601 times (eta, expires, date_done) and Python's
// repr of JSON values (argsrepr, kwargsrepr and event fields are Python reprs).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "celery/json.h"

namespace celeriac::celery {

// Thrown when bytes are not valid base64.
struct Base64Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string base64_encode(std::string_view bytes);
std::string base64_decode(std::string_view text);  // throws Base64Error

// A random (version 4) UUID in the canonical lower-case form.
std::string uuid4();

// Seconds since the Unix epoch, as a double (Celery's timestamps are floats).
double unix_now();

// "2026-11-24T23:40:25.023628+00:00" (aware UTC, as Celery writes eta/expires headers).
std::string format_iso8601_utc(double unix_seconds);
// "2026-11-24T23:44:29.951234" (naive UTC, as Celery 5.2/5.3 write date_done).
std::string format_iso8601_naive_utc(double unix_seconds);
// Parses ISO-8601 with or without fraction and offset ("Z", "+HH:MM"); naive = UTC.
// nullopt when the text is not a date-time.
std::optional<double> parse_iso8601(std::string_view text);

// Python's repr() of the value a JSON document decodes to (None, True, 'text', [1, 2], {...}).
std::string python_repr(const Json& value);
// repr of a tuple built from a JSON array: "(4, 6)", "(4,)", "()".
std::string python_tuple_repr(const Json& array);

// kombu >= 5.3 wraps non-JSON values as {"__type__": T, "__value__": V}; tasks see plain
// JSON, so such objects are replaced by their value (dates stay ISO strings).
void unwrap_kombu_types(Json& value);

}  // namespace celeriac::celery
