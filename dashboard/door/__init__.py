"""What every request and connection meets, by whichever door it comes in (HTTP or Socket.IO):
the token (`auth`), the text a journal can hold (`boundary`), strict parsing (`parsing`), the
one error shape (`errors`) and its codes (`codes`), who asked (`audit`), the Socket.IO gate
with its caps (`gate`) and the per-connection frame limits (`frames`, `rate_limit`). The
bottom room of the web layer: it imports no other."""
