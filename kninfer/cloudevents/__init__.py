"""CloudEvents for inference: the event contract (`contract`), the HTTP protocol binding as pure
functions over (headers, body) (`binding`), the redelivery cache (`dedupe`) and building request
events (`client`). No transport here: kninfer.http.events serves them."""
