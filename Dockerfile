# A raftkv node in a container:
#   docker build -t raftkv .
#   docker run -p 8080:8080 -p 7000:7000 -v raftkv-data:/data raftkv \
#     serve --id node1 --http-addr 0.0.0.0:8080 --raft-addr 0.0.0.0:7000 \
#     --advertise-http HOST:8080 --advertise-raft HOST:7000
# (HOST: the address other nodes and clients reach this container on.)
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/raftkv ./cmd/raftkv && mkdir /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/raftkv /usr/local/bin/raftkv
# The image runs as the distroless nonroot user: the data dir must be its
# own, or a fresh volume mounted there would be root's.
COPY --from=build --chown=65532:65532 /out/data /data
VOLUME /data
ENV RAFTKV_DATA_DIR=/data
EXPOSE 8080 7000
ENTRYPOINT ["/usr/local/bin/raftkv"]
CMD ["serve", "--http-addr", "0.0.0.0:8080", "--raft-addr", "0.0.0.0:7000"]
