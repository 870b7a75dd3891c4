// The JSON type of the wire formats. Insertion-ordered so the objects we write keep the key
// order Celery writes (status, result, traceback, ... task_id), which keeps captured and
// generated messages comparable by eye.
#pragma once

#include <nlohmann/json.hpp>

namespace celeriac::celery {
using Json = nlohmann::ordered_json;
}
