// Governance maps and their single-entry keys. These must match the Go
// constants in gov/constitution/maps.go (a test checks).
const MAPS = {
  membersCerts: "public:ccf.gov.members.certs",
  membersInfo: "public:ccf.gov.members.info",
  membersEncryptionPublicKeys: "public:ccf.gov.members.encryption_public_keys",
  usersCerts: "public:ccf.gov.users.certs",
  usersInfo: "public:ccf.gov.users.info",
  nodesInfo: "public:ccf.gov.nodes.info",
  nodesMeasurements: "public:ccf.gov.nodes.measurements",
  serviceInfo: "public:ccf.gov.service.info",
  serviceConfig: "public:ccf.gov.service.config",
  constitution: "public:ccf.gov.constitution",
};
const SERVICE_KEY = "service";
const CONSTITUTION_KEY = "";
const MEASUREMENT_ALLOWED = "AllowedToJoin";
