# Declarations of the unit fastwsgi/_conn_request.pxi: the WSGI objects of one request
# (the classes FileWrapper, InputStream and Responder are declared in _connection.pxd).

cdef void _retire_responder(Connection conn, bint force) noexcept
