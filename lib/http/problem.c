/* implementation pending: see header */
